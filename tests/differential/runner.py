"""Differential runner for the Python drivers: PyMySQL and MariaDB
Connector/Python (PyPI `mariadb`, built on libmariadb).

    python3 runner.py DRIVER HOST PORT USER PASSWORD CASES.json

CASES.json is written by tests/tests/differential.rs: a list of
{"case": name, "steps": [{"session", "kind", "sql", "params"}]}. Prints one
canonical transcript per case, "=== case NAME" first, that the Rust side
compares between MariaDB directly and Torpor. Each case gets fresh
sessions A and B (B opened on first use).
"""
import json
import sys
import time


def value(v):
    if v is None:
        return "NULL"
    if isinstance(v, (bytes, bytearray)):
        try:
            return "b'" + bytes(v).decode("utf-8") + "'"
        except UnicodeDecodeError:
            return "0x" + bytes(v).hex()
    return repr(v)


class Pymysql:
    name = "pymysql"

    def __init__(self, host, port, user, password):
        import pymysql

        self.m = pymysql
        self.args = dict(host=host, port=port, user=user, password=password,
                         database="test", autocommit=True, charset="utf8mb4",
                         read_timeout=4)

    def connect(self):
        return self.m.connect(**self.args)

    def error(self, e):
        args = getattr(e, "args", ())
        code = args[0] if len(args) > 0 else "?"
        msg = args[1] if len(args) > 1 else ""
        return "error: %s %s %s" % (type(e).__name__, code, msg)

    def run(self, conn, step, out):
        cur = conn.cursor()
        kind, sql, params = step["kind"], step["sql"], step["params"]
        if kind == "bulk":
            cur.executemany(sql, [tuple(p) for p in params])
        elif params is not None:
            cur.execute(sql.replace("?", "%s"), tuple(params))
        else:
            cur.execute(sql)
        while True:
            if cur.description:
                out.append("  cols: " + ", ".join("%s:%s" % (d[0], d[1]) for d in cur.description))
                for row in cur.fetchall():
                    out.append("  row: " + " | ".join(value(v) for v in row))
            res = conn._result
            out.append("  ok: rows=%s insert_id=%s warnings=%s" % (
                cur.rowcount, cur.lastrowid, res.warning_count if res else "?"))
            if not cur.nextset():
                break
        cur.close()


class Mariadb:
    name = "mariadb"

    def __init__(self, host, port, user, password):
        import mariadb

        self.m = mariadb
        self.args = dict(host=host, port=port, user=user, password=password,
                         database="test", autocommit=True,
                         read_timeout=4)

    def connect(self):
        return self.m.connect(**self.args)

    def error(self, e):
        return "error: %s %s %s %s" % (type(e).__name__, getattr(e, "errno", "?"),
                                      getattr(e, "sqlstate", "?"), getattr(e, "msg", str(e)))

    def run(self, conn, step, out):
        kind, sql, params = step["kind"], step["sql"], step["params"]
        cur = conn.cursor(prepared=(kind == "binary"))
        if kind == "bulk":
            cur.executemany(sql, [tuple(p) for p in params])
        elif params is not None:
            cur.execute(sql, tuple(params))
        else:
            cur.execute(sql)
        while True:
            if cur.description:
                out.append("  cols: " + ", ".join("%s:%s" % (d[0], d[1]) for d in cur.description))
                for row in cur.fetchall():
                    out.append("  row: " + " | ".join(value(v) for v in row))
            out.append("  ok: rows=%s insert_id=%s warnings=%s" % (
                cur.rowcount, cur.lastrowid, cur.warnings))
            if not cur.nextset():
                break
        cur.close()


def main():
    driver, host, port, user, password, path = sys.argv[1:7]
    d = {"pymysql": Pymysql, "mariadb": Mariadb}[driver](host, int(port), user, password)
    for case in json.load(open(path, encoding="utf-8")):
        out = ["=== case " + case["case"]]
        sessions = {}
        for step in case["steps"]:
            s = step["session"]
            out.append("[%s] %s %s%s" % (s, step["kind"], step["sql"],
                                         "" if step["params"] is None else " ||| " + json.dumps(step["params"])))
            if step["kind"] == "sleep":
                time.sleep(float(step["sql"]))
                continue
            if step["kind"] == "close":
                conn = sessions.pop(s, None)
                if conn is not None:
                    try:
                        conn.close()
                    except Exception as e:  # noqa: BLE001 - every error is output
                        out.append("  close " + d.error(e))
                continue
            try:
                if s not in sessions:
                    sessions[s] = d.connect()
                d.run(sessions[s], step, out)
            except Exception as e:  # noqa: BLE001 - every error is output
                out.append("  " + d.error(e))
        for conn in sessions.values():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a killed session may not close
                pass
        print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
