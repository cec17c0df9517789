-- Run once by the postgres image on a new data directory (as the `admin` superuser).
-- The gateways' login role; `bordergate audit migrate --grant` gives it INSERT and SELECT
-- on the audit table, nothing else. Development password: change it (and
-- BORDERGATE_AUDIT_PG in docker-compose.yml) for anything real.
CREATE ROLE bordergate_gateway LOGIN PASSWORD 'gateway-dev-password';
