# about: every form of SET, each read back.
SET sql_mode = 'ANSI'
SELECT @@sql_mode
SET @@sql_mode = 'TRADITIONAL'
SELECT @@sql_mode, @@session.sql_mode
SET SESSION time_zone = '+02:00'
SET @@session.div_precision_increment = 7
SET LOCAL auto_increment_increment = 3
SELECT @@time_zone, @@div_precision_increment, @@auto_increment_increment
SET @@local.sql_mode = 'NO_ZERO_DATE', time_zone = '-01:00', @u = 42, SESSION group_concat_max_len = 2048
SELECT @@sql_mode, @@time_zone, @u, @@group_concat_max_len
SET autocommit = 0
SELECT @@autocommit
SET autocommit = 1
SET @@unknown_variable_x = 1
SET time_zone = 'Not/AZone'
