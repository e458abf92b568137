from ruledsl.cli import app

app(prog_name="ruledsl")
