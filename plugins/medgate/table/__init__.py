"""`medgate table`: several models' reports side by side, optionally against a reference model."""
