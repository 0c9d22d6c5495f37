/* Differential runner on libmariadb (the C connector every libmariadb
 * driver shares). Built by tests/tests/differential.rs with `cc` at test time.
 *
 *   runner HOST PORT USER PASSWORD CASES.txt
 *
 * CASES.txt: "=== NAME" lines start a case; each other line is one step,
 * fields separated by 0x1F: session, kind (text|binary|direct|bulk|sleep),
 * SQL (newlines as 0x1E), then parameters (one per field, as strings, or
 * the literal NULL). Prints a transcript with the session-tracking data
 * libmariadb hands the client after every result. */
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *host, *user, *password;
static unsigned port;
static MYSQL *sessions[2];

static void track(MYSQL *m) {
    static const char *names[] = {"vars", "schema", "state", "gtids", "tx_chars", "tx_type"};
    for (int t = 0; t <= SESSION_TRACK_TRANSACTION_TYPE; t++) {
        const char *data;
        size_t len;
        if (mysql_session_track_get_first(m, t, &data, &len) != 0) continue;
        printf("  track %s:", names[t]);
        do {
            printf(" [%.*s]", (int)len, data);
        } while (mysql_session_track_get_next(m, t, &data, &len) == 0);
        printf("\n");
    }
}

static void ok(MYSQL *m) {
    printf("  ok: rows=%lld insert_id=%llu warnings=%u\n",
           (long long)mysql_affected_rows(m), (unsigned long long)mysql_insert_id(m),
           mysql_warning_count(m));
    track(m);
}

static void err(MYSQL *m) {
    printf("  error: %u %s %s\n", mysql_errno(m), mysql_sqlstate(m), mysql_error(m));
}

static void serr(MYSQL_STMT *s) {
    printf("  error: %u %s %s\n", mysql_stmt_errno(s), mysql_stmt_sqlstate(s), mysql_stmt_error(s));
}

static void cols(MYSQL_RES *r) {
    unsigned n = mysql_num_fields(r);
    MYSQL_FIELD *f = mysql_fetch_fields(r);
    printf("  cols:");
    for (unsigned i = 0; i < n; i++) printf("%s %s:%d:%u:%u", i ? "," : "", f[i].name, f[i].type, f[i].charsetnr, f[i].flags);
    printf("\n");
}

static void text(MYSQL *m, const char *sql) {
    if (mysql_real_query(m, sql, strlen(sql))) { err(m); return; }
    do {
        MYSQL_RES *r = mysql_store_result(m);
        if (r) {
            cols(r);
            unsigned n = mysql_num_fields(r);
            MYSQL_ROW row;
            while ((row = mysql_fetch_row(r))) {
                unsigned long *len = mysql_fetch_lengths(r);
                printf("  row:");
                for (unsigned i = 0; i < n; i++)
                    printf("%s %.*s", i ? " |" : "", row[i] ? (int)len[i] : 4, row[i] ? row[i] : "NULL");
                printf("\n");
            }
            mysql_free_result(r);
        } else if (mysql_field_count(m)) { err(m); return; }
        ok(m);
        int next = mysql_next_result(m);
        if (next > 0) { err(m); return; }
        if (next < 0) break;
    } while (1);
}

static void stmt(MYSQL *m, const char *kind, const char *sql, char **params, int np) {
    MYSQL_STMT *s = mysql_stmt_init(m);
    MYSQL_BIND *pb = calloc(np + 1, sizeof *pb);
    unsigned long *plen = calloc(np + 1, sizeof *plen);
    for (int i = 0; i < np; i++) {
        if (strcmp(params[i], "NULL") == 0) { pb[i].buffer_type = MYSQL_TYPE_NULL; continue; }
        pb[i].buffer_type = MYSQL_TYPE_STRING;
        pb[i].buffer = params[i];
        plen[i] = strlen(params[i]);
        pb[i].length = &plen[i];
    }
    int failed;
    if (strcmp(kind, "direct") == 0) {
        unsigned int n = np;
        mysql_stmt_attr_set(s, STMT_ATTR_PREBIND_PARAMS, &n);
        if (np) mysql_stmt_bind_param(s, pb);
        failed = mariadb_stmt_execute_direct(s, sql, strlen(sql));
    } else {
        failed = mysql_stmt_prepare(s, sql, strlen(sql));
        if (!failed && np) failed = mysql_stmt_bind_param(s, pb);
        if (!failed) failed = mysql_stmt_execute(s);
    }
    if (failed) { serr(s); goto done; }
    do {
        MYSQL_RES *meta = mysql_stmt_result_metadata(s);
        if (meta) {
            cols(meta);
            unsigned n = mysql_num_fields(meta);
            MYSQL_BIND *rb = calloc(n, sizeof *rb);
            char (*buf)[256] = calloc(n, 256);
            unsigned long *len = calloc(n, sizeof *len);
            my_bool *nul = calloc(n, sizeof *nul);
            for (unsigned i = 0; i < n; i++) {
                rb[i].buffer_type = MYSQL_TYPE_STRING;
                rb[i].buffer = buf[i];
                rb[i].buffer_length = 255;
                rb[i].length = &len[i];
                rb[i].is_null = &nul[i];
            }
            mysql_stmt_bind_result(s, rb);
            int rc;
            while ((rc = mysql_stmt_fetch(s)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
                printf("  row:");
                for (unsigned i = 0; i < n; i++)
                    printf("%s %.*s", i ? " |" : "", nul[i] ? 4 : (int)(len[i] > 255 ? 255 : len[i]), nul[i] ? "NULL" : buf[i]);
                printf("\n");
            }
            if (rc == 1) serr(s);
            mysql_free_result(meta);
            free(rb); free(buf); free(len); free(nul);
        }
        printf("  ok: rows=%lld insert_id=%llu warnings=%u\n", (long long)mysql_stmt_affected_rows(s),
               (unsigned long long)mysql_stmt_insert_id(s), mysql_warning_count(m));
        track(m);
        int next = mysql_stmt_next_result(s);
        if (next > 0) { serr(s); break; }
        if (next < 0) break;
    } while (1);
done:
    mysql_stmt_close(s);
    free(pb);
    free(plen);
}

static MYSQL *session(int i) {
    if (sessions[i]) return sessions[i];
    MYSQL *m = mysql_init(NULL);
    unsigned timeout = 4; /* a reply that never comes is an error, not a hang */
    mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
    if (!mysql_real_connect(m, host, user, password, "test", port, NULL,
                            CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS)) {
        printf("  connect error: %u %s %s\n", mysql_errno(m), mysql_sqlstate(m), mysql_error(m));
    }
    return sessions[i] = m;
}

static void end_case(void) {
    for (int i = 0; i < 2; i++) {
        if (sessions[i]) mysql_close(sessions[i]);
        sessions[i] = NULL;
    }
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: runner HOST PORT USER PASSWORD CASES\n"); return 2; }
    host = argv[1]; port = atoi(argv[2]); user = argv[3]; password = argv[4];
    FILE *in = fopen(argv[5], "r");
    if (!in) { perror(argv[5]); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, in)) > 0) {
        if (line[got - 1] == '\n') line[--got] = 0;
        if (strncmp(line, "=== ", 4) == 0) {
            end_case();
            printf("=== case %s\n", line + 4);
            continue;
        }
        char *fields[64];
        int nf = 0;
        for (char *p = line, *f; nf < 64 && (f = strsep(&p, "\x1f"));) fields[nf++] = f;
        if (nf < 3) continue;
        for (char *p = fields[2]; *p; p++) if (*p == '\x1e') *p = '\n';
        printf("[%s] %s %s\n", fields[0], fields[1], fields[2]);
        if (strcmp(fields[1], "sleep") == 0) { usleep((useconds_t)(atof(fields[2]) * 1e6)); continue; }
        int which = fields[0][0] == 'B';
        if (strcmp(fields[1], "close") == 0) {
            if (sessions[which]) mysql_close(sessions[which]);
            sessions[which] = NULL;
            continue;
        }
        MYSQL *m = session(which);
        if (strcmp(fields[1], "text") == 0) text(m, fields[2]);
        else if (strcmp(fields[1], "bulk") == 0) printf("  skipped: bulk is not in this runner\n");
        else stmt(m, fields[1], fields[2], fields + 3, nf - 3);
    }
    end_case();
    return 0;
}
