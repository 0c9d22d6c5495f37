# about: the cursor procedure through the binary protocol.
CREATE OR REPLACE PROCEDURE diff_cursor_b()
  BEGIN
    DECLARE v INT;
    DECLARE c CURSOR FOR SELECT seq FROM seq_1_to_3;
    OPEN c;
    FETCH c INTO v;
    SELECT v AS first_value;
    CLOSE c;
  END
@binary CALL diff_cursor_b()
SELECT 'after' AS next
