# about: replies of every size around those the data path treats apart (copied into the client's buffer, the backend's buffer handed over whole, written straight through): single values and rows, text and binary, several results in one query, two sessions in turn.
SELECT REPEAT('a', 1000) AS s
SELECT REPEAT('b', 2100) AS s
SELECT seq, REPEAT(CHAR(65 + seq % 26), 100) AS r FROM seq_1_to_40
SELECT seq, REPEAT(CHAR(97 + seq % 26), 120) AS r FROM seq_1_to_100
SELECT REPEAT('c', 16300) AS s
SELECT REPEAT('d', 17000) AS s
SELECT seq, REPEAT('e', 200) AS r FROM seq_1_to_300
@binary SELECT seq, REPEAT(?, 120) AS r FROM seq_1_to_60 ||| ["x"]
SELECT seq FROM seq_1_to_10; SELECT REPEAT('f', 5000) AS s; SELECT seq, REPEAT('g', 100) AS r FROM seq_1_to_50
B: SELECT seq, REPEAT('h', 130) AS r FROM seq_1_to_100
SELECT seq, REPEAT('i', 90) AS r FROM seq_1_to_100
B: SELECT 1
