# about: ROW_COUNT() and FOUND_ROWS() answer for the session's own previous
# statements when the other session ran statements in between (in the
# one-connection run both sessions take turns on the same backend
# connection).
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
SELECT id FROM diff_rc WHERE id <= 2
B: SELECT id FROM diff_rc
SELECT FOUND_ROWS()
B: SELECT FOUND_ROWS() AS f
WITH w AS (SELECT id FROM diff_rc) SELECT id FROM w WHERE id > 1
B: SELECT 1 FROM diff_rc WHERE id = 99
SELECT FOUND_ROWS() AS fr, FOUND_ROWS() + ROW_COUNT() AS sum
SELECT id FROM diff_rc WHERE id = 99
B: SELECT 1
INSERT INTO diff_rc (id, v) SELECT 100, FOUND_ROWS()
B: SELECT v FROM diff_rc WHERE id = 100
SELECT id FROM diff_rc WHERE id <= 2
B: SELECT id FROM diff_rc
SELECT FOUND_ROWS() AS beside_derived, d.* FROM (SELECT 1 AS one) d
SELECT id FROM diff_rc WHERE id <= 2
B: SELECT id FROM diff_rc
WITH w AS (SELECT 1 AS one) SELECT FOUND_ROWS() AS beside_cte, one FROM w
SELECT id FROM diff_rc WHERE id <= 2
B: SELECT id FROM diff_rc
UPDATE diff_rc SET v = 7 WHERE id = 1
SELECT FOUND_ROWS() AS kept_by_update
SELECT id FROM diff_rc WHERE id <= 3
B: SELECT id FROM diff_rc
INSERT INTO diff_rc VALUES (200, 0)
B: SELECT 1
SET @k = 1
B: SELECT id FROM diff_rc
INSERT INTO diff_rc VALUES (200, 0)
SELECT FOUND_ROWS() AS kept_by_insert_set_and_a_failure
@binary SELECT id FROM diff_rc WHERE id <= ? ||| [2]
B: SELECT id FROM diff_rc
SELECT FOUND_ROWS() AS after_a_prepared_select
@binary UPDATE diff_rc SET v = ? WHERE id = 1 ||| [8]
B: SELECT id FROM diff_rc
SELECT FOUND_ROWS() AS kept_by_a_prepared_update
SHOW TABLES LIKE 'diff_rc'
B: SELECT id FROM diff_rc
SELECT FOUND_ROWS() AS after_a_show
UPDATE diff_rc SET v = 9 WHERE id <= 2; UPDATE diff_rc SET v = 9 WHERE id <= 3
B: UPDATE diff_rc SET v = 10
SELECT ROW_COUNT() AS after_several_statements
SELECT id FROM diff_rc WHERE id <= 2; SELECT id FROM diff_rc WHERE id <= 3
B: SELECT id FROM diff_rc
SELECT FOUND_ROWS() AS after_several_selects
DROP TABLE diff_rc
