-- The local stack's source database: a small shop, owned by the role Philotes replicates as.
-- Used by docker-compose.yml (as an init script of the source PostgreSQL) and by
-- deployments/scripts/setup-local.sh --no-docker. The role's password is set by the caller.
CREATE ROLE replicator LOGIN REPLICATION;
-- Philotes makes its publication (CREATE on the database) over tables it owns.
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO replicator', current_database()); END $$;
CREATE SCHEMA shop AUTHORIZATION replicator;
SET ROLE replicator;
CREATE TABLE shop.customers (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  note text
);
CREATE TABLE shop.orders (
  id bigint PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES shop.customers (id),
  status text NOT NULL,
  total numeric(12, 2) NOT NULL,
  placed_at timestamptz NOT NULL
);
INSERT INTO shop.customers
SELECT g, 'customer ' || g, 'c' || g || '@example.com', CASE WHEN g % 7 = 0 THEN repeat('vip ', 10) END
FROM generate_series(1, 500) g;
INSERT INTO shop.orders
SELECT g, 1 + g % 500, (ARRAY['open', 'paid', 'shipped', 'returned'])[1 + g % 4], (g % 997) * 1.25,
       '2026-01-01'::timestamptz + g * interval '7 minutes'
FROM generate_series(1, 5000) g;
RESET ROLE;
