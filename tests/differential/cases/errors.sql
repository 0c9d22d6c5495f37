# about: errors keep MariaDB's code, SQLSTATE and text.
SELECT * FROM no_such_table_diff
SELEC 1
SELECT 1 FROM DUAL WHERE
USE no_such_schema_diff
SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'custom message', MYSQL_ERRNO = 1644
SELECT DATABASE()
