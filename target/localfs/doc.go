// Package localfs is a Tidemark target that keeps a directory of files in
// sync with what a flow declares: a static site rendered from an API, one
// JSON file per record, an export for another tool to pick up.
//
//	site := localfs.Directory(flow, "public")
//	tidemark.ForEach(docs, func(_ context.Context, r *tidemark.Row, id string, d Doc) error {
//		site.Declare(r, target.Key("posts/"+id+".html"), localfs.File{Content: render(d)})
//		return nil
//	})
//
// # The directory
//
// Directory declares a directory as a container target. Its persistent key
// is "localfs:" followed by the absolute, cleaned path (a relative path is
// resolved against the working directory when Directory is called), so
// moving a flow's output to another path is another target: the engine
// drops the old directory (see below) and writes every file into the new
// one.
//
// Setting the directory up creates it, with its missing parents, if it does
// not exist. A directory that Tidemark creates gets a marker file named
// ".tidemark-directory" (see MarkerFile), made in the same step: the
// directory is created under a temporary name with its marker and then
// renamed into place, so a crash never leaves an unmarked directory behind.
//
// Dropping the directory — the flow no longer declares it, or Engine.Drop —
// removes it with everything in it if and only if it holds the marker. A
// directory that existed before Tidemark used it is never removed: it is
// left as it is, with the files Tidemark wrote in it; so is a directory
// whose marker was deleted. A flow that stops declaring every Directory must
// call Register, so that Tidemark still has a handler to drop them with. A
// directory removed outside Tidemark is created again, without a marker, by
// the next write.
//
// # Files
//
// The directory's children are files, keyed by their path relative to the
// directory: slash-separated, and possibly in subdirectories ("a/b.html").
// A key must be a local, clean path: not empty, not absolute, without "."
// or ".." elements, empty elements, a trailing slash, backslashes or NUL
// bytes, and not the marker file. A key that breaks these rules fails the
// source row that declared it (the error matches ErrInvalidName); the other
// rows go on.
//
// Each file's tracking record is a fingerprint of its content and mode, so
// a file whose content did not change is not written again. Tidemark does
// not look at the files themselves to decide: a file changed outside
// Tidemark is only overwritten when its declared content changes, or by an
// update with tidemark.ModeReexport.
//
// A write is atomic: the content goes to a temporary file in the same
// directory (".name.tmp-" and a random suffix), which is synced and then
// renamed over the file. A reader sees the old file or the new one, never a
// mix, and an existing file is replaced, never truncated in place (a hard
// link to the old file keeps the old content). Missing parent directories
// are created. The directories a write touched are synced before the batch
// ends, so the state store never commits a write the disk may lose (unless
// WithoutSync is given). A process killed in the middle of a write can leave
// its temporary file behind: harmless, never read, and removed with the
// directory when Tidemark drops it.
//
// A file no longer declared — its source row deleted, or the processing
// function no longer declaring it — is deleted; a file already missing is
// no error. Subdirectories left empty by a deletion are removed, up to but
// not including the directory itself. A directory that a deleted key names
// (placed there outside Tidemark) is left alone.
//
// # Confinement
//
// Every file operation goes through an os.Root opened on the directory, so
// it cannot reach outside it, whatever the file system holds: a symbolic
// link inside the directory is followed only if it is relative and resolves
// within the directory; one that leads out, or is absolute, fails the write
// (and so the row). A key naming a symbolic link replaces the link itself,
// never the file it points to. A deletion whose path goes through such a
// link has nothing to delete (no write could have gone that way), and a
// deletion never removes a link it went through.
//
// # Batches and errors
//
// The sink applies the actions of many source rows in one call: deletions
// first (so that a file can become a directory of the same name within a
// batch, and back), then writes. An error names the file and stops the
// batch; the engine then splits the batch by source row to find the rows at
// fault, records them as failed and retries them on the next update. Writes
// and deletions are idempotent, so applying a batch again after a crash is
// safe.
package localfs
