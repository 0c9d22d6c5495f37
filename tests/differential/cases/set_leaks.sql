# about: a variable set in one session is never seen by the next one on
# the same pooled connection (B opens after A changed its state).
SET @@sql_mode = 'ANSI'
SET @@max_sort_length = 2000
SET @leak = 'a'
B: SELECT @@sql_mode, @@max_sort_length, @leak
SELECT @@sql_mode, @@max_sort_length, @leak
