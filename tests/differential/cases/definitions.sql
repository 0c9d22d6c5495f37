# about: a definition the server keeps (a view, a routine, a column's
# default) keeps the calls of its text: CONNECTION_ID() and ROW_COUNT()
# in it are not frozen to the creating session's values.
CREATE OR REPLACE VIEW diff_def_v AS SELECT CONNECTION_ID() > 0 AS c
SHOW CREATE VIEW diff_def_v
SELECT c FROM diff_def_v
CREATE OR REPLACE PROCEDURE diff_def_p() SELECT CONNECTION_ID() > 0 AS c, ROW_COUNT() AS n
SELECT ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_NAME = 'diff_def_p'
CREATE OR REPLACE TABLE diff_def_t (c BIGINT DEFAULT (CONNECTION_ID()))
SHOW CREATE TABLE diff_def_t
ALTER TABLE diff_def_t ALTER COLUMN c SET DEFAULT (CONNECTION_ID() + 1)
SHOW CREATE TABLE diff_def_t
DROP PROCEDURE diff_def_p
DROP VIEW diff_def_v
DROP TABLE diff_def_t
