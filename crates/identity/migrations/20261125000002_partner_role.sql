-- Partners (shops and brands) may publish their products to the catalog.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('user', 'partner', 'admin'));
