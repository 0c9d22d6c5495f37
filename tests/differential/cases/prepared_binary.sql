# about: the binary protocol: prepare and execute, with parameters.
CREATE OR REPLACE TABLE diff_bin (id INT AUTO_INCREMENT PRIMARY KEY, s VARCHAR(20), d DATE)
@binary INSERT INTO diff_bin (s, d) VALUES (?, ?) ||| ["one", "2024-02-29"]
@binary SELECT id, s, d FROM diff_bin WHERE id = ? ||| [1]
@binary SELECT CAST(? AS SIGNED) AS n ||| ["12abc"]
@binary SHOW WARNINGS
@binary SELECT no_such_column FROM diff_bin
@binary SET @@sql_mode = 'ANSI'
B: SELECT @@sql_mode
DROP TABLE diff_bin
