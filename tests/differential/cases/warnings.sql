# about: warnings, SHOW WARNINGS and @@warning_count survive whatever the
# proxy does between statements.
SET @b = CAST('abc' AS SIGNED)
SHOW WARNINGS
SELECT CAST('1x' AS SIGNED) AS v
SHOW WARNINGS
SELECT @@warning_count
SELECT 1/0 AS d
SHOW COUNT(*) WARNINGS
SELECT @@warning_count, @@error_count
SHOW WARNINGS
SELECT no_such_column
SHOW ERRORS
SELECT @@error_count
