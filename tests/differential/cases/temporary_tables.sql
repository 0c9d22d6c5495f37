# about: a temporary table belongs to its session only.
# skip-pool1: A's temporary table pins the only backend connection
CREATE TEMPORARY TABLE diff_tmp (id INT)
INSERT INTO diff_tmp VALUES (1), (2)
SELECT COUNT(*) FROM diff_tmp
B: SELECT COUNT(*) FROM diff_tmp
B: CREATE TEMPORARY TABLE diff_tmp (id INT)
B: SELECT COUNT(*) FROM diff_tmp
SELECT COUNT(*) FROM diff_tmp
