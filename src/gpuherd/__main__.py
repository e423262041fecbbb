"""`python -m gpuherd` runs the same CLI as the `gpuherd` console script."""

from gpuherd.cli.app import main

if __name__ == "__main__":
    main()
