# about: table locks (taken as a prepared statement) and named locks end
# with their session; the next session does not hold or wait on them.
# skip-pool1: A holds the only backend connection while it is locked
CREATE OR REPLACE TABLE diff_lock (id INT)
@binary LOCK TABLES diff_lock WRITE
SELECT GET_LOCK('diff_named', 0)
@close
B: SET SESSION lock_wait_timeout = 2
B: SELECT GET_LOCK('diff_named', 2) AS got
B: SELECT RELEASE_LOCK('diff_named')
B: INSERT INTO diff_lock VALUES (1)
B: SELECT COUNT(*) FROM diff_lock
B: DROP TABLE diff_lock
