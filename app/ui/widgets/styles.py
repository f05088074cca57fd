"""Style sheets shared by the tabs (one place, so a field error looks the same everywhere)."""

FIELD_ERROR_STYLE = "border: 2px solid #c62828; border-radius: 3px;"  # the field an error names
