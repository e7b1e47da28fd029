"""mixed, the Python server: bench/py/echo.py, to which the cell passes
the work per request as --rounds."""
import echo

if __name__ == "__main__":
    echo.cli()
