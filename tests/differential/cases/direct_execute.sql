# about: MariaDB's direct execute (prepare and execute in one write) and
# bulk execute: the MariaDB Python connector uses them for every
# parameterized execute and executemany; libmariadb has
# mariadb_stmt_execute_direct.
CREATE OR REPLACE TABLE diff_direct (id INT PRIMARY KEY, s VARCHAR(20))
@direct INSERT INTO diff_direct VALUES (?, ?) ||| [1, "one"]
@direct SELECT id, s FROM diff_direct WHERE id = ? ||| [1]
@bulk INSERT INTO diff_direct VALUES (?, ?) ||| [[2, "two"], [3, "three"]]
SELECT id, s FROM diff_direct ORDER BY id
@direct SELECT no_such_column FROM diff_direct WHERE id = ? ||| [1]
DROP TABLE diff_direct
