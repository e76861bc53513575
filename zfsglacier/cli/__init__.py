"""One module per command; bin/zg-* and the console scripts call ``main()`` of these."""
