"""Public data: pinned sources, verified fetch, harmonized cell tables and QC."""
