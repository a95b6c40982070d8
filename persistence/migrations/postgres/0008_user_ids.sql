-- Users' ids are allocated before the insert (`allocate_ids('users')`), so that their sealed
-- personal fields can be bound to the row they belong to (AES-GCM associated data).
INSERT INTO id_blocks (name, next_id) SELECT 'users', COALESCE(MAX(id), 0) + 1 FROM users;
