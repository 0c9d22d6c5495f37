# about: a column whose expression calls CONNECTION_ID(), ROW_COUNT() or
# FOUND_ROWS() is named after the client's text, whatever Torpor put in
# its place (MariaDB names an unaliased column after the item's text, as
# written): in a larger expression, in a subquery, in a derived table.
SELECT CONNECTION_ID() > 0
SELECT  CONNECTION_ID()  >  0 ,1 AS one
SELECT DISTINCT CONNECTION_ID()/*c*/+1 > 1
SELECT CONCAT('id', CONNECTION_ID() > 0), CONNECTION_ID() > 0 AS aliased, CONNECTION_ID() > 0 implicit
SELECT (SELECT CONNECTION_ID() > 0) + 1 AS n, (SELECT CONNECTION_ID() > 0)
SELECT d.* FROM (SELECT CONNECTION_ID() > 0, CONNECTION_ID() - CONNECTION_ID()) d
SELECT CASE WHEN CONNECTION_ID() > 0 THEN 'yes' END, CONNECTION_ID() IS NULL, -CONNECTION_ID() < 0
CREATE OR REPLACE TABLE diff_cn (id INT PRIMARY KEY, v INT)
INSERT INTO diff_cn VALUES (1, 0), (2, 0), (3, 0)
UPDATE diff_cn SET v = 1 WHERE id <= 2
B: UPDATE diff_cn SET v = 2 WHERE id = 3
SELECT ROW_COUNT() + 1, ROW_COUNT() * 10 AS ten
SELECT id FROM diff_cn WHERE id <= 2
B: SELECT id FROM diff_cn
SELECT FOUND_ROWS() > 1, IF(FOUND_ROWS() = 2, 'two', 'other')
DROP TABLE diff_cn
