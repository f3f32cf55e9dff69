"""The warehouse: Delta tables in a folder or object-store URI (store.py) and what lives beside them: every
table's spec (catalog.py), the day-one views, the run ledger (ops.runs), the one writer of file outcomes
(ops.file_state), the lease one writer at a time holds, the live files, and the stages' records of what
they last found unchanged (state.py)."""
