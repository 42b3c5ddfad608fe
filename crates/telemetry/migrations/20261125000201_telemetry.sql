-- Telemetry keeps its samples in InfluxDB; this database holds only the platform's tables
-- (processed events of its consumer). This migration records the schema version.
SELECT 1;
