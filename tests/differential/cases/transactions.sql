# about: transactions and what the session tracker reports about them.
# skip-pool1: A's open transaction holds the only backend connection
CREATE OR REPLACE TABLE diff_tx (id INT PRIMARY KEY) ENGINE=InnoDB
START TRANSACTION
INSERT INTO diff_tx VALUES (1)
B: SELECT COUNT(*) FROM diff_tx
SELECT @@in_transaction
ROLLBACK
SELECT COUNT(*) FROM diff_tx
SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED
SELECT @@tx_isolation
B: SELECT @@tx_isolation
DROP TABLE diff_tx
