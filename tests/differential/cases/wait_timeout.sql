# about: a session idle past its own wait_timeout is closed as MariaDB
# closes it.
SET SESSION wait_timeout = 1
@sleep 2
SELECT 'after timeout' AS s
