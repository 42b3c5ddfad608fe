-- Partners' products as free-form JSON documents, upserted by (partner, sku), searched by
-- full text over brand, model, name and category.

CREATE TABLE catalog_products (
    partner    text        NOT NULL,
    sku        text        NOT NULL,
    category   text        NOT NULL,
    document   jsonb       NOT NULL,
    search     tsvector    GENERATED ALWAYS AS (
        to_tsvector('simple',
            coalesce(document->>'brand', '') || ' ' || coalesce(document->>'model', '') || ' ' ||
            coalesce(document->>'name', '') || ' ' || category)
    ) STORED,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, sku)
);

CREATE INDEX catalog_products_search ON catalog_products USING GIN (search);
CREATE INDEX catalog_products_category ON catalog_products (category);
CREATE INDEX catalog_products_document ON catalog_products USING GIN (document jsonb_path_ops);
