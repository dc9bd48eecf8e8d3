"""Small embedded default data sets, each with its licence notice (see NOTICE.md inside)."""
