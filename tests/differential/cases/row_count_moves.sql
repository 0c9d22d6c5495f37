# about: ROW_COUNT() answers for the session's own previous statement when
# the other session ran statements in between (in the one-connection run
# both sessions take turns on the same backend connection).
CREATE OR REPLACE TABLE diff_rc (id INT PRIMARY KEY, v INT)
INSERT INTO diff_rc VALUES (1, 0), (2, 0), (3, 0), (4, 0)
UPDATE diff_rc SET v = 1 WHERE id <= 3
B: UPDATE diff_rc SET v = 2 WHERE id = 4
SELECT ROW_COUNT()
B: SELECT ROW_COUNT()
B: DELETE FROM diff_rc WHERE id = 99
SELECT ROW_COUNT() AS again, ROW_COUNT() + 1 AS plus
B: SELECT ROW_COUNT() AS n
INSERT INTO diff_rc VALUES (1, 0)
B: INSERT INTO diff_rc VALUES (5, 0), (6, 0)
SELECT ROW_COUNT()
B: SELECT ROW_COUNT()
SET @n = 1
B: UPDATE diff_rc SET v = 3
SELECT ROW_COUNT()
DELETE FROM diff_rc WHERE id > 4
B: SELECT 1
INSERT INTO diff_rc SELECT id + 10, ROW_COUNT() FROM diff_rc WHERE id = 1
SELECT id, v FROM diff_rc WHERE id > 10
B: SELECT ROW_COUNT()
DROP TABLE diff_rc
