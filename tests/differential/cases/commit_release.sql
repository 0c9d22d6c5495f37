# about: COMMIT RELEASE, and COMMIT under completion_type = RELEASE, end
# the session once they have answered, as MariaDB closes the connection;
# ROLLBACK NO RELEASE does not.
SET SESSION completion_type = 'RELEASE'
BEGIN
SELECT 'in a transaction' AS s
ROLLBACK NO RELEASE
SELECT 'still here' AS s
SET SESSION completion_type = 'NO_CHAIN'
BEGIN
SELECT 'in a transaction' AS s
COMMIT RELEASE
SELECT 'after release' AS s
