-- Catalog search by brand (exact, ignoring case). Attribute filters are served by the
-- document's jsonb_path_ops GIN index (catalog_products_document) through containment.

CREATE INDEX catalog_products_brand ON catalog_products (lower(document->>'brand'));
