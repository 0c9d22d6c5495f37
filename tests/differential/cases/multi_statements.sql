# about: several statements and results in one query string.
SELECT 1 AS a; SELECT 2 AS b, 'x' AS c; SET @m = 3; SELECT @m
SELECT 1; SELECT no_such_col; SELECT 3
