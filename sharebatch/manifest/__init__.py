"""The manifest language: YAML with locations, fields, resolution, periods, templates."""
