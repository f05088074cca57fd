"""What every tab shares: the background-task relay, formatting and error presentation.

Tabs import from here and from app.core, never from one another (tests/ui/test_tab_imports.py).
"""
