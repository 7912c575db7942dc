"""Code that only the book's chapters use (the study's ablation and ladder, ...),
kept apart from the library that a researcher imports."""
