"""The .arch language: syntax tree, parser (the grammar is grammar/arch.lark) and unparser."""
