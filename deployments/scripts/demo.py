"""The live demo: a changing PostgreSQL replicated into Iceberg, then queried from Iceberg.

Started by deployments/scripts/demo.sh, which installs PostgreSQL and the Python reader first.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from lake import Lake  # noqa: E402
from pgcluster import Cluster  # noqa: E402

BINARY = ROOT / "target" / "debug" / "philotes"
SECONDS = int(os.environ.get("DEMO_SECONDS", "20"))
# Metrics on any free port: the demo must not fail on a machine whose Prometheus has 9090.
os.environ.setdefault("PHILOTES_METRICS_ADDR", "127.0.0.1:0")


def say(msg):
    print(f"\n\033[1m▶ {msg}\033[0m" if sys.stdout.isatty() else f"\n> {msg}", flush=True)


def load(url, stop, stats):
    rnd = random.Random(42)
    with psycopg.connect(url, autocommit=True) as c:
        next_id = 1001
        while not stop.is_set():
            with c.transaction():
                for _ in range(rnd.randint(1, 10)):
                    r = rnd.random()
                    if r < 0.5:
                        c.execute("INSERT INTO shop.orders VALUES (%s, %s, %s, 'new', now())",
                                  (next_id, rnd.randint(1, 50), round(rnd.uniform(5, 500), 2)))
                        next_id += 1
                        stats["insert"] += 1
                    elif r < 0.85:
                        c.execute("UPDATE shop.orders SET status = %s, updated_at = now() WHERE id = %s",
                                  (rnd.choice(["paid", "shipped", "delivered"]), rnd.randint(1, next_id)))
                        stats["update"] += 1
                    else:
                        c.execute("DELETE FROM shop.orders WHERE id = %s", (rnd.randint(1, next_id),))
                        stats["delete"] += 1
            time.sleep(0.02)


def main():
    say("starting a throwaway PostgreSQL (wal_level=logical)")
    cluster = Cluster()
    data_dir = Path(os.environ.get("DEMO_DATA_DIR", ROOT / "philotes-demo-data"))
    shutil.rmtree(data_dir, ignore_errors=True)
    try:
        url = cluster.url()
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE SCHEMA shop")
            c.execute("CREATE TABLE shop.customers (id int PRIMARY KEY, name text, country char(2))")
            c.execute("CREATE TABLE shop.orders (id bigint PRIMARY KEY, customer_id int, amount numeric(10,2), status text, updated_at timestamptz)")
            c.execute("INSERT INTO shop.customers SELECT g, 'customer ' || g, (ARRAY['DE','FR','NL','FI'])[1 + g % 4] FROM generate_series(1, 50) g")
            c.execute("INSERT INTO shop.orders SELECT g, 1 + g % 50, (g % 97) * 3.5, 'new', now() FROM generate_series(1, 1000) g")
        print(f"  source: {url}\n  shop.customers: 50 rows, shop.orders: 1000 rows")

        say(f"replicating with `philotes run` while inserts, updates and deletes run for {SECONDS} s")
        stop = threading.Event()
        stats = {"insert": 0, "update": 0, "delete": 0}
        writer = threading.Thread(target=load, args=(url, stop, stats))
        writer.start()
        cmd = [str(BINARY), "run", "--source", url, "--data-dir", str(data_dir), "--flush-interval", "1s"]
        print("  $ " + " ".join(cmd))
        p = subprocess.Popen(cmd, env={**os.environ, "PHILOTES_LOG": os.environ.get("PHILOTES_LOG", "info")})
        time.sleep(SECONDS / 2)
        say("while the load goes on: `philotes verify` compares source and lake as of one LSN")
        verify_cmd = [cmd[0], "verify", "--source", url, "--data-dir", str(data_dir)]
        print("  $ " + " ".join(verify_cmd))
        verified = subprocess.run(verify_cmd, env={**os.environ, "PHILOTES_LOG": "warn"}).returncode
        time.sleep(SECONDS / 2)
        stop.set()
        writer.join()
        print(f"  the load made {stats['insert']} inserts, {stats['update']} updates, {stats['delete']} deletes")
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)

        say("catching up: `philotes run --until-caught-up` exits once Iceberg has everything")
        subprocess.run(cmd[:-2] + ["--until-caught-up"], check=True)

        say("reading the lake back with pyiceberg (an independent Iceberg reader)")
        lake = Lake(data_dir)
        state = lake.current_state("shop.orders__changelog", ["id"])
        changes = lake.changelog("shop.orders__changelog")
        with psycopg.connect(url) as c:
            source = {r[0]: r for r in c.execute("SELECT id, customer_id, amount, status FROM shop.orders ORDER BY id")}
        counts = ", ".join(f"{op}={sum(1 for r in changes if r['_cdc_op'] == op)}" for op in "SIUD")
        print(f"  changelog rows: {len(changes)} ({counts})")
        print(f"  current state from Iceberg: {len(state)} orders   source: {len(source)} orders\n")
        print(f"  {'id':>6} | {'source status':<14} {'source amount':>13} | {'iceberg status':<14} {'iceberg amount':>14}")
        print("  " + "-" * 70)
        ids = sorted(source)
        for oid in ids[:6] + ids[-6:]:
            s = source[oid]
            l = state.get((oid,), {})
            print(f"  {oid:>6} | {s[3]:<14} {s[2]:>13} | {str(l.get('status')):<14} {str(l.get('amount')):>14}")
        same = all(
            (oid,) in state and (state[(oid,)]["customer_id"], state[(oid,)]["amount"], state[(oid,)]["status"]) == (s[1], s[2], s[3])
            for oid, s in source.items()
        ) and len(state) == len(source)
        print(f"\n  every row equal: {'yes' if same else 'NO'}")

        query = "SELECT status, count(*) AS orders, sum(amount) AS amount FROM shop.orders GROUP BY status ORDER BY status"
        say("the same lake through `philotes sql` (DataFusion inside; shop.orders is the current state)")
        sql_cmd = [cmd[0], "sql", "--data-dir", str(data_dir), query]
        print("  $ " + " ".join(sql_cmd[:-1]) + f' "{query}"')
        subprocess.run(sql_cmd, check=True)
        print(f"  the source is gone with the demo; the lake stays in {data_dir}. Query it with\n"
              f"    {cmd[0]} sql --data-dir {data_dir}\n"
              f"  or open it with pyiceberg:\n"
              f"    SqlCatalog('philotes', uri='sqlite:///{data_dir}/catalog.db', warehouse='file://{data_dir}/warehouse')")
        return 0 if same and verified == 0 else 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
