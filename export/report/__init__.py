"""Pages written for people: the build report (report.html, `export.report.build`) and the
experiment report's page (`export.report.experiments`). `page` lays a self-contained HTML page
out, `charts` draws its charts, `latency` times the shipped bundle's answers."""
