"""Records and analyses as output: tables and formats, chart files and the HTML report."""
