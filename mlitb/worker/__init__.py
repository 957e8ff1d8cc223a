"""The headless Python worker: `mlitb worker --master URL`, the same protocol as a browser tab."""
