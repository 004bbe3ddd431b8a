"""The cohort table: one row per scan, the same schema for synthetic and real data."""

from __future__ import annotations

# Diagnostic groups and their integer labels (SCIENCE.md §1.1): dual carries both diseases.
GROUPS: dict[str, int] = {"HC": 0, "MDD": 1, "diabetes": 2, "dual": 3}
HEALTHY = "HC"

# Columns every manifest has; extra columns are kept.
MANIFEST_COLUMNS = ("subject_id", "path", "age", "sex", "group", "site")
