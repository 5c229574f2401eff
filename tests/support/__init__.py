"""What the tests share besides fixtures: paths, scraping and parsing, locust runs, servers run as processes."""
