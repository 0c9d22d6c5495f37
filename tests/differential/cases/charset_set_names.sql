# about: SET NAMES and the character set a session reports afterwards.
SET NAMES utf8
SELECT @@character_set_client, @@character_set_connection, @@character_set_results, @@collation_connection
SET NAMES latin1 COLLATE latin1_german1_ci
SELECT @@collation_connection, CHARSET('x'), COLLATION('x')
SET CHARACTER SET utf8mb4
SELECT @@character_set_client, @@character_set_results
SET NAMES utf8mb4
SELECT 'ü€' AS s, LENGTH('ü€') AS l
