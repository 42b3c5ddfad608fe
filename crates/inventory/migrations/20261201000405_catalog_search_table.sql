-- Everything a catalog search looks at, in a narrow table of its own: key, category,
-- brand, attributes and words, about 250 bytes a product, where a row of catalog_products
-- holds the whole document (links, prices, names: about 1 kB). A text search ranks every
-- match to keep the best few, and a filter that matches thousands of products sorts them all;
-- here that reads a fraction of the pages. catalog_products keeps the documents, read by
-- key for the products returned.
--
-- The import writes both in one statement, and leaves a search row alone when a change
-- (a price, the stock) does not touch what is searched.

CREATE TABLE catalog_search (
    partner    text     NOT NULL,
    sku        text     NOT NULL,
    category   text     NOT NULL,
    -- lower(document->>'brand')
    brand      text     NOT NULL,
    -- document->'attributes', {} when absent
    attributes jsonb    NOT NULL,
    words      tsvector NOT NULL,
    PRIMARY KEY (partner, sku),
    FOREIGN KEY (partner, sku) REFERENCES catalog_products (partner, sku) ON DELETE CASCADE
);

-- In partner and SKU order within a category or a brand: a search filtered by one of them
-- reads `limit` rows, or walks them in order while other filters hold.
CREATE INDEX catalog_search_category ON catalog_search (category, partner, sku);
CREATE INDEX catalog_search_brand ON catalog_search (brand, partner, sku);
CREATE INDEX catalog_search_words ON catalog_search USING GIN (words);
CREATE INDEX catalog_search_attributes ON catalog_search USING GIN (attributes jsonb_path_ops);

INSERT INTO catalog_search (partner, sku, category, brand, attributes, words)
SELECT partner, sku, category, lower(coalesce(document->>'brand', '')),
       coalesce(document->'attributes', '{}'::jsonb), search
FROM catalog_products;

-- What moved: the words (their GIN index goes with the column) and the indexes for filters.
ALTER TABLE catalog_products DROP COLUMN search;
DROP INDEX catalog_products_category;
DROP INDEX catalog_products_brand;
DROP INDEX catalog_products_document;
