"""Commands that read or tend a warehouse but are not pipeline stages: `voxlake maintain`, `export`,
`report` and `sql`."""
