// Command ferretdb runs FerretDB v1 (MongoDB wire protocol on SQLite) for local
// development and CI. It embeds the upstream `ferretdb` package instead of
// `go install`-ing cmd/ferretdb, whose module zip lacks build/version/version.txt
// and panics at start (FerretDB issue #2982).
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only with -pprof-addr: where the database's CPU goes
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27217", "TCP address to listen on")
	sqliteURL := flag.String("sqlite-url", "file:var/ferretdb/", "SQLite directory URL (must end with /)")
	level := flag.String("log-level", "warn", "log level: debug, info, warn, error")
	pprofAddr := flag.String("pprof-addr", "", "serve Go's profiler on this address (e.g. 127.0.0.1:6060); empty = off")
	flag.Parse()

	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		log.Fatalf("bad -log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: *sqliteURL,
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Warn("ferretdb listening", "addr", *listen, "sqlite", *sqliteURL)
	if err := f.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
