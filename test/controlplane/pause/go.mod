// The sandbox image of the test node; see ../README.md.
module controlplane/pause

go 1.24.0
