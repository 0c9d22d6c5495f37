# about: stored procedures with several result sets, and with a cursor.
CREATE OR REPLACE PROCEDURE diff_multi() BEGIN SELECT 1 AS one; SELECT 2 AS two, 'b' AS bee; END
CALL diff_multi()
CREATE OR REPLACE PROCEDURE diff_cursor()
  BEGIN
    DECLARE done INT DEFAULT 0;
    DECLARE v INT;
    DECLARE c CURSOR FOR SELECT seq FROM seq_1_to_3;
    DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
    OPEN c;
    FETCH c INTO v;
    SELECT v AS first_value;
    SELECT seq FROM seq_1_to_3;
    CLOSE c;
  END
CALL diff_cursor()
SELECT 'after' AS next
CREATE OR REPLACE PROCEDURE diff_setter() BEGIN SET @@sql_mode = 'ANSI'; SET @from_proc = 1; END
CALL diff_setter()
SELECT @@sql_mode, @from_proc
B: SELECT @@sql_mode, @from_proc
