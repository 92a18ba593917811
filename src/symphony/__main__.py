from symphony.cli.main import app

app(prog_name="symphony")
