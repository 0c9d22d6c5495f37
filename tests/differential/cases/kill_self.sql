# about: KILL of one's own connection and KILL QUERY of oneself.
SET @me = CONNECTION_ID()
EXECUTE IMMEDIATE CONCAT('KILL QUERY ', @me)
SELECT 'still here' AS s
EXECUTE IMMEDIATE CONCAT('KILL ', @me)
SELECT 'gone' AS s
