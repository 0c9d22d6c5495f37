# about: with completion_type = RELEASE a plain COMMIT ends the session
# once it has answered, as MariaDB closes the connection.
SET SESSION completion_type = 'RELEASE'
BEGIN
SELECT 'in a transaction' AS s
COMMIT
SELECT 'after release' AS s
