# The bad-input matrix: attend run as a user runs it, on files and options that are
# wrong in one way each. Every case checks the exit code (1 failure, 2 usage error,
# 130 interrupted) and that stderr is exactly one line naming what is wrong (the file,
# the option, the folder). Run them with `ctest -L bad_input`.
#
# The files come from one fixture (BadInput.Fixtures, tests/apps/bad_input_fixtures.sh):
# a tiny IDX data set, tiny ram, cam and captioner checkpoints, and broken copies of
# each kind of file, under ${CMAKE_CURRENT_BINARY_DIR}/tmp/bad-inputs. It needs the
# MNIST IDX files scripts/setup puts in data/mnist.

set(bad_inputs ${CMAKE_CURRENT_BINARY_DIR}/tmp/bad-inputs)
set(bad_input_attend $<TARGET_FILE:attend_cli>)

add_test(NAME BadInput.Fixtures
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/bad_input_fixtures.sh ${bad_input_attend} ${PROJECT_SOURCE_DIR}/data/mnist
          ${bad_inputs})
set_tests_properties(BadInput.Fixtures PROPERTIES FIXTURES_SETUP bad_inputs LABELS bad_input TIMEOUT 300)

# attend_bad_input(<group> <name> <exit-code> <regex> <attend arguments>...): the case
# BadInput.<group>.<name> runs `attend <arguments>` through expect.sh, which checks the
# exit code, the regex against stderr, and that stderr is one line. An argument holding
# @OUT@ gets this case's own output folder there. (No ';' in a regex: ctest would split
# the argument at it.)
function(attend_bad_input group name code regex)
  set(test BadInput.${group}.${name})
  string(REPLACE "@OUT@" "${bad_inputs}/out/${group}.${name}" args "${ARGN}")
  add_test(NAME ${test} COMMAND ${CMAKE_CURRENT_LIST_DIR}/expect.sh ${code} "${regex}" ${bad_input_attend} ${args})
  set_tests_properties(${test} PROPERTIES LABELS bad_input FIXTURES_REQUIRED bad_inputs TIMEOUT 120
    ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
endfunction()

# attend_bad_input_script(<group> <name> <script> <mode>): a case that needs more than
# one run of attend (signals, concurrent runs); the script runs them and checks:
# <script> <mode> <attend> <fixture folder> <output folder of its own>.
function(attend_bad_input_script group name script mode)
  set(test BadInput.${group}.${name})
  add_test(NAME ${test} COMMAND ${CMAKE_CURRENT_LIST_DIR}/${script} ${mode} ${bad_input_attend} ${bad_inputs}
                                ${bad_inputs}/out/${group}.${name})
  set_tests_properties(${test} PROPERTIES LABELS bad_input FIXTURES_REQUIRED bad_inputs TIMEOUT 180
    ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
endfunction()

set(B ${bad_inputs})
set(OUT @OUT@)
# Training on the fixture's data (its 32 training items leave room for 8 validation ones).
set(train_ram train ram --data ${B}/idx --val-count 8)

# ---------------------------------------------------------------- data files (IDX, JSON)
attend_bad_input(DataFiles MissingFolder 1 "bad-inputs/nope: no such folder$"
  train ram --data ${B}/nope --run-dir ${OUT})
attend_bad_input(DataFiles FileWhereAFolderBelongs 1 "idx/manifest[.]json: .*folder"
  train ram --data ${B}/idx/manifest.json --run-dir ${OUT})
attend_bad_input(DataFiles MissingLabels 1
  "idx-no-labels: no train-labels-idx1-ubyte or train-labels-idx1-ubyte[.]gz in this folder"
  train ram --data ${B}/idx-no-labels --run-dir ${OUT})
attend_bad_input(DataFiles EmptyImageFile 1 "idx-empty/train-images-idx3-ubyte: empty file"
  train ram --data ${B}/idx-empty --run-dir ${OUT})
attend_bad_input(DataFiles TruncatedImageFile 1
  "idx-truncated/train-images-idx3-ubyte: truncated: dims .32, 28, 28. declare 25088 data bytes but the file holds 9984"
  train ram --data ${B}/idx-truncated --run-dir ${OUT})
attend_bad_input(DataFiles TrailingBytes 1 "idx-trailing/train-images-idx3-ubyte: trailing bytes"
  train ram --data ${B}/idx-trailing --run-dir ${OUT})
attend_bad_input(DataFiles TextInsteadOfIdx 1 "idx-text/train-images-idx3-ubyte: bad magic 74 68 65 73"
  train ram --data ${B}/idx-text --run-dir ${OUT})
attend_bad_input(DataFiles WrongElementType 1 "idx-magic/train-images-idx3-ubyte: unsupported IDX element type 0x0d"
  train ram --data ${B}/idx-magic --run-dir ${OUT})
attend_bad_input(DataFiles AbsurdDeclaredSize 1
  "idx-huge/train-images-idx3-ubyte: declared size .2147483647, 28, 28. exceeds the limit"
  train ram --data ${B}/idx-huge --run-dir ${OUT})
attend_bad_input(DataFiles LabelsWhereImagesBelong 1 "idx-rank/train-images-idx3-ubyte: expected images of rank 3"
  train ram --data ${B}/idx-rank --run-dir ${OUT})
attend_bad_input(DataFiles FewerLabelsThanImages 1
  "idx-count/train-labels-idx1-ubyte: holds 31 labels but .*train-images-idx3-ubyte holds 32 images"
  train ram --data ${B}/idx-count --run-dir ${OUT})
attend_bad_input(DataFiles LabelOutsideTheClasses 1 "idx-label200/train-labels-idx1-ubyte: label 200 "
  train ram --data ${B}/idx-label200 --val-count 8 --epochs 1 --run-dir ${OUT})
attend_bad_input(DataFiles LabelOutsideTheClassesAsSource 1 "idx-label200/train-labels-idx1-ubyte: label 200 "
  data cluttered --source ${B}/idx-label200 --count 4 --sheet 0 --out ${OUT})
attend_bad_input(DataFiles SplitsOfDifferentImageSizes 1
  "idx-shape: the test split holds 1x14x56 images but the training split 1x28x28"
  train ram --data ${B}/idx-shape --val-count 8 --epochs 1 --run-dir ${OUT})
attend_bad_input(DataFiles EvalOnImagesOfAnotherSize 1 "1x14x56 images but the model expects 1x28x28"
  eval ${B}/ram/last.pt --data ${B}/idx-shape)
attend_bad_input(DataFiles EvalOnATruncatedSplit 1 "idx-truncated/train-images-idx3-ubyte: truncated"
  eval ${B}/ram/last.pt --data ${B}/idx-truncated --split train)
attend_bad_input(DataFiles TruncatedGzip 1 "idx-gz-truncated/train-images-idx3-ubyte[.]gz: .*truncated or corrupt"
  train ram --data ${B}/idx-gz-truncated --run-dir ${OUT})
attend_bad_input(DataFiles TextNamedGzip 1 "idx-gz-text/train-images-idx3-ubyte[.]gz: bad magic"
  data cluttered --source ${B}/idx-gz-text --count 4 --sheet 0 --out ${OUT})
attend_bad_input(DataFiles CaptionJsonFieldOfTheWrongType 1
  "bad-fields[.]json: images.0.[.]filename: expected a string, found number"
  train captioner --data ${B}/captions/bad-fields.json --run-dir ${OUT})
attend_bad_input(DataFiles CaptionJsonMalformed 1 "not-json[.]json: malformed JSON: parse error at line 1"
  train captioner --data ${B}/captions/not-json.json --run-dir ${OUT})
attend_bad_input(DataFiles CaptionJsonMissing 1 "captions/missing[.]json: file does not exist"
  score --references ${B}/captions/missing.json --candidates ${B}/captions/candidates.json)

# ---------------------------------------------------------------- checkpoints
attend_bad_input(Checkpoints Missing 1 "ckpt/nope[.]pt: no such checkpoint$" eval ${B}/ckpt/nope.pt)
attend_bad_input(Checkpoints FolderNamedLikeOne 1 "ckpt/folder[.]pt: is a folder, expected a checkpoint file"
  eval ${B}/ckpt/folder.pt)
attend_bad_input(Checkpoints EmptyFile 1 "ckpt/empty[.]pt: not a readable checkpoint" eval ${B}/ckpt/empty.pt)
attend_bad_input(Checkpoints TextFile 1 "ckpt/text[.]pt: not a readable checkpoint"
  classify ${B}/ckpt/text.pt ${B}/img/good.png)
attend_bad_input(Checkpoints Truncated 1 "ckpt/truncated[.]pt: not a readable checkpoint: no zip directory at its end"
  segment ${B}/ckpt/truncated.pt ${B}/img/good.png --out ${OUT})
attend_bad_input(Checkpoints BytesFlippedInAWeight 1 "ckpt/flipped[.]pt: corrupt: checksum mismatch"
  eval ${B}/ckpt/flipped.pt)
attend_bad_input(Checkpoints UnknownModelKind 1 "ckpt/unknown-kind[.]pt: holds a 'rxm' model"
  eval ${B}/ckpt/unknown-kind.pt)
attend_bad_input(Checkpoints ClassifierForCaption 1 "ram/last[.]pt: holds a 'ram' model, not a captioner"
  caption ${B}/ram/last.pt ${B}/img/good.png)
attend_bad_input(Checkpoints CaptionerForClassify 1 "captioner/last[.]pt: holds a 'captioner' model, not an image classifier"
  classify ${B}/captioner/last.pt ${B}/img/good.png)
attend_bad_input(Checkpoints NoCamsForSegment 2 "a 'ram' model has no class activation maps"
  segment ${B}/ram/last.pt ${B}/img/good.png --out ${OUT})
attend_bad_input(Checkpoints NoFeatureMapForSaliency 2 "a 'ram' model has no feature map to explain"
  saliency ${B}/ram/last.pt ${B}/img/good.png --out ${OUT})
attend_bad_input(Checkpoints NoCamsForMasks 2 "--masks: a 'ram' model has no class activation maps"
  eval ${B}/ram/last.pt --masks)
attend_bad_input(Checkpoints NotTorchScriptEither 1 "ckpt/text[.]pt: not a TorchScript file"
  saliency ${B}/ckpt/text.pt ${B}/img/good.png --out ${OUT})
# --init-from is read before the run folder is made.
attend_bad_input(Checkpoints InitFromMissing 1 "ckpt/nope[.]pt: no such checkpoint$"
  ${train_ram} --epochs 1 --init-from ${B}/ckpt/nope.pt --run-dir ${OUT})
attend_bad_input(Checkpoints InitFromTruncated 1 "ckpt/truncated[.]pt: not a readable checkpoint: no zip directory"
  ${train_ram} --epochs 1 --init-from ${B}/ckpt/truncated.pt --run-dir ${OUT})
attend_bad_input(Checkpoints InitFromNothingInCommon 1
  "cam/last[.]pt: no parameter or buffer of this 'cam' checkpoint fits the model"
  ${train_ram} --epochs 1 --init-from ${B}/cam/last.pt --run-dir ${OUT})
attend_bad_input(Checkpoints ResumeWithAnotherModel 1 "model[.]options[.]glimpses is 2 there but 3 now"
  train ram --data ${B}/idx --epochs 2 --batch 16 --val-count 8 --glimpses 3 --glimpse-size 6 --hidden 16
  --what-size 8 --where-size 8 --glimpse-features 16 --run-dir ${B}/ram)
attend_bad_input(Checkpoints TraceNeedsGlimpses 2 "--trace needs a model that looks through glimpses .ram, soft.. this one is a 'cam'"
  classify ${B}/cam/last.pt ${B}/img/good.png --trace ${OUT}/trace.png)
attend_bad_input(Checkpoints SamplesNeedAStochasticModel 2 "--samples needs a model whose predictions are sampled. a 'cam'"
  classify ${B}/cam/last.pt ${B}/img/good.png --samples 3)

# ---------------------------------------------------------------- images
attend_bad_input(Images TruncatedPng 1 "img/truncated[.]png: truncated PNG: the file ends inside the IDAT chunk"
  classify ${B}/ram/last.pt ${B}/img/truncated.png)
attend_bad_input(Images HeaderClaims60000x60000 1
  "img/huge[.]png: image is 60000x60000, larger than the limit of 32768 pixels per side$"
  classify ${B}/ram/last.pt ${B}/img/huge.png)
attend_bad_input(Images ZeroBytes 1 "img/empty[.]png: is empty .0 bytes., not an image$"
  classify ${B}/ram/last.pt ${B}/img/empty.png)
attend_bad_input(Images TextNamedPng 1 "img/text[.]png: not a readable image .unknown format"
  classify ${B}/ram/last.pt ${B}/img/text.png)
attend_bad_input(Images FlippedByte 1 "img/flipped[.]png: corrupt PNG: CRC mismatch in the IDAT chunk"
  classify ${B}/ram/last.pt ${B}/img/flipped.png)
attend_bad_input(Images DataTheDecoderRejects 1 "img/bad-zlib[.]png: corrupt PNG data"
  classify ${B}/ram/last.pt ${B}/img/bad-zlib.png)
attend_bad_input(Images Missing 1 "img/missing[.]png: no such file$" classify ${B}/ram/last.pt ${B}/img/missing.png)
attend_bad_input(Images FolderWithoutImages 1 "img/no-images: folder holds no image files$"
  classify ${B}/ram/last.pt ${B}/img/no-images)
attend_bad_input(Images OneBadInAFolderForClassify 1 "^attend: error: .*img/mixed/b[.]png: truncated PNG"
  classify ${B}/ram/last.pt ${B}/img/mixed)
attend_bad_input(Images OneBadInAFolderForCaption 1 "^attend: error: .*img/mixed32/b[.]png: truncated PNG"
  caption ${B}/captioner/last.pt ${B}/img/mixed32)
attend_bad_input(Images OneBadInAFolderForSaliency 1 "^attend: error: .*img/mixed/b[.]png: truncated PNG"
  saliency ${B}/cam/last.pt ${B}/img/mixed --out ${OUT})
attend_bad_input(Images TruncatedForSegment 1 "img/truncated[.]png: truncated PNG"
  segment ${B}/cam/last.pt ${B}/img/truncated.png --out ${OUT})
attend_bad_input(Images ColourForAGreyModel 1 "img/colour[.]png: has 3 channels. the model takes 1 .grey.$"
  segment ${B}/cam/last.pt ${B}/img/colour.png --out ${OUT})
attend_bad_input(Images TextNamedMp4 1 "^attend: error: .*img/text[.]mp4: cannot open as a video"
  saliency ${B}/cam/last.pt ${B}/img/text.mp4 --out ${OUT})
attend_bad_input(Images MissingVideo 1 "img/missing[.]mp4: no such file$"
  saliency ${B}/cam/last.pt ${B}/img/missing.mp4 --out ${OUT})

# ---------------------------------------------------------------- options
attend_bad_input(Options Unknown 2 "unknown option --no-such-flag .see 'attend classify --help'.$"
  classify ${B}/ram/last.pt ${B}/img/good.png --no-such-flag)
attend_bad_input(Options TypoGetsASuggestion 2 "unknown option --batch-size. did you mean --batch[?]"
  ${train_ram} --batch-size 4 --run-dir ${OUT})
attend_bad_input(Options MissingRequired 2 "--run-dir is required" train ram --data ${B}/idx)
attend_bad_input(Options MissingValue 2 "the required argument for option '--run-dir' is missing"
  train ram --data ${B}/idx --run-dir)
attend_bad_input(Options BatchZero 2 "--batch must be between 1 and 65536, got 0 "
  ${train_ram} --batch 0 --run-dir ${OUT})
attend_bad_input(Options BatchOfATrillion 2 "--batch must be between 1 and 65536, got 1000000000000"
  ${train_ram} --batch 1000000000000 --run-dir ${OUT})
attend_bad_input(Options BatchNotAWholeNumber 2 "the argument .'1e12'. for option '--batch' is invalid"
  ${train_ram} --batch 1e12 --run-dir ${OUT})
attend_bad_input(Options EpochsNegative 2 "--epochs must be between 1 and 100000, got -1"
  ${train_ram} --epochs -1 --run-dir ${OUT})
attend_bad_input(Options ScheduleOutOfTheChoices 2 "--schedule must be constant, step or cosine, got 'linear'"
  ${train_ram} --schedule linear --run-dir ${OUT})
attend_bad_input(Options ModelKindUnknown 2 "unknown model 'svm', expected ram, "
  train svm --data ${B}/idx --run-dir ${OUT})
attend_bad_input(Options ThreadsNegative 2 "--threads must be between 0 and 1024, got -1" --threads -1 info)
attend_bad_input(Options SeedNegative 2 "--seed must be .*got -1"
  data cluttered --source ${B}/idx --seed -1 --out ${OUT})
attend_bad_input(Options CanvasSmallerThanTheDigits 2 "--canvas must be between 28 .*got 5"
  data cluttered --source ${B}/idx --canvas 5 --out ${OUT})
attend_bad_input(Options FragmentLargerThanTheDigits 2 "--fragment-size must be between 1 and 28 .*got 100"
  data cluttered --source ${B}/idx --fragment-size 100 --out ${OUT})
attend_bad_input(Options ReinforceWeightNotFinite 2 "--reinforce-weight must be a finite number, got nan"
  ${train_ram} --reinforce-weight nan --run-dir ${OUT})
attend_bad_input(Options WeightDecayNotFinite 2 "--weight-decay must be a finite number, got inf"
  ${train_ram} --weight-decay inf --run-dir ${OUT})
attend_bad_input(Options LearningRateNegative 2 "--lr must be a number > 0, got -1"
  ${train_ram} --lr -1 --run-dir ${OUT})
attend_bad_input(Options GlimpseLargerThanTheImages 2 "glimpse.size 100 is larger than the 28x28 images"
  ${train_ram} --glimpse-size 100 --run-dir ${OUT})
attend_bad_input(Options ValidationLargerThanTheData 2 "--val-count: .*between 0 and 31 .*got 100"
  train ram --data ${B}/idx --val-count 100 --run-dir ${OUT})
attend_bad_input(Options DataAndScenesTogether 2 "give exactly one of --data DIR or --scenes"
  ${train_ram} --scenes cluttered --run-dir ${OUT})
attend_bad_input(Options OptionOfAnotherKind 2 "--scales does not apply to a 'cnn' model .it is an option of 'ram'."
  train cnn --data ${B}/idx --scales 2 --run-dir ${OUT})
attend_bad_input(Options SaliencyMethodUnknown 2 "--method: unknown method 'gradcam[+][+][+]'"
  saliency ${B}/cam/last.pt ${B}/img/good.png --out ${OUT} --method gradcam+++)
attend_bad_input(Options SaliencyClassOutOfRange 2 "--class 10 is out of range: the model has 10 classes"
  saliency ${B}/cam/last.pt ${B}/img/good.png --out ${OUT} --class 10)
attend_bad_input(Options ColormapUnknown 2 "--colormap: unknown colormap 'rainbowz'"
  saliency ${B}/cam/last.pt ${B}/img/good.png --out ${OUT} --colormap rainbowz)
attend_bad_input(Options TorchScriptOptionForACheckpoint 2 "--input-size applies to TorchScript models"
  saliency ${B}/cam/last.pt ${B}/img/good.png --out ${OUT} --input-size 64)
attend_bad_input(Options BeamZero 2 "--beam must be between 1 and 100, got 0"
  caption ${B}/captioner/last.pt ${B}/img/good.png --beam 0)
attend_bad_input(Options CaptionLongerThanTheModel 2 "--max-length must be between 1 and [0-9]+, got 1000"
  caption ${B}/captioner/last.pt ${B}/img/good.png --max-length 1000)
attend_bad_input(Options AlphaOutOfRange 2 "--alpha must be in .0,1., got 1[.]5"
  segment ${B}/cam/last.pt ${B}/img/good.png --out ${OUT} --alpha 1.5)
attend_bad_input(Options EvalRowOfZeroSamples 2 "--samples must be between 1 and 1000 each, got 0"
  eval ${B}/ram/last.pt --samples 0)
attend_bad_input(Options SplitOutOfTheChoices 2 "--split must be one of train, test, got 'validation'"
  eval ${B}/ram/last.pt --split validation)
attend_bad_input(Options DataKindUnknown 2 "unknown kind 'spirals', expected translated, cluttered or objects"
  data spirals --out ${OUT})
attend_bad_input(Options NoCommand 2 "no command given" --seed 3)
attend_bad_input(Options NoImages 2 "caption: no image files given" caption ${B}/captioner/last.pt)

# ---------------------------------------------------------------- output paths
# Under a regular file, so no folder can be made there (tests may run as root, for whom
# permissions do not stop a write).
attend_bad_input(Paths RunFolderUnderAFile 1 "bad-inputs/file/run: cannot create run folder: Not a directory"
  ${train_ram} --run-dir ${B}/file/run)
attend_bad_input(Paths RunFolderIsAFile 1 "bad-inputs/file: cannot create run folder: Not a directory"
  ${train_ram} --run-dir ${B}/file)
attend_bad_input(Paths DataOutputUnderAFile 1 "bad-inputs/file/data: cannot create output folder: Not a directory"
  data cluttered --source ${B}/idx --count 4 --sheet 0 --out ${B}/file/data)
attend_bad_input(Paths SaliencyOutputUnderAFile 1 "bad-inputs/file/saliency: cannot create output folder: Not a directory"
  saliency ${B}/cam/last.pt ${B}/img/good.png --out ${B}/file/saliency)
attend_bad_input(Paths SegmentOutputUnderAFile 1 "bad-inputs/file/segment: cannot create the output folder: Not a directory"
  segment ${B}/cam/last.pt ${B}/img/good.png --out ${B}/file/segment)
attend_bad_input(Paths TraceFolderUnderAFile 1 "bad-inputs/file/traces: cannot create trace folder: Not a directory"
  classify ${B}/ram/last.pt ${B}/img/good.png ${B}/img/mixed/a.png --trace ${B}/file/traces)
attend_bad_input(Paths TraceImageUnderAFile 1 "bad-inputs/file/trace[.]png: cannot create folder .*: Not a directory"
  classify ${B}/ram/last.pt ${B}/img/good.png --trace ${B}/file/trace.png)
attend_bad_input(Paths AttentionMapsUnderAFile 1 "bad-inputs/file/maps: cannot create folder: Not a directory"
  caption ${B}/captioner/last.pt ${B}/img/good.png --attention ${B}/file/maps)
attend_bad_input(Paths CaptionsFileUnderAFile 1 "bad-inputs/file/captions[.]json: cannot create folder .*: Not a directory"
  eval ${B}/captioner/last.pt --captions ${B}/file/captions.json)

# ---------------------------------------------------------------- signals
# A training stopped once it has started: exit 130, one line naming last.pt, which loads.
attend_bad_input_script(Signals SigintDuringTraining signal_case.sh INT)
attend_bad_input_script(Signals SigtermDuringTraining signal_case.sh TERM)
# attend data stopped while it writes: exit 130, one line, no temporary file, no manifest.
attend_bad_input_script(Signals SigintDuringData data_signal_case.sh INT)
attend_bad_input_script(Signals SigtermDuringData data_signal_case.sh TERM)

# ---------------------------------------------------------------- concurrent runs
# One run per run folder: a second one fails at once naming the folder and the holder's
# process id; the lock of a killed run does not block the next one.
attend_bad_input_script(ConcurrentRuns SecondRunOnTheSameFolder concurrent_case.sh second)
attend_bad_input_script(ConcurrentRuns KilledRunDoesNotBlock concurrent_case.sh stale)

# ---------------------------------------------------------------- distributed training
# tests/apps/distributed_case.sh: attend launch and workers started by hand.
attend_bad_input_script(Distributed LaunchTrainsTwoWorkers distributed_case.sh train)
attend_bad_input_script(Distributed KilledWorkerStopsTheRunAndItResumes distributed_case.sh killed)
attend_bad_input_script(Distributed ASecondWorkerEndingBySignalIsNamed distributed_case.sh signalled)
attend_bad_input_script(Distributed TwoMachinesOnLoopback distributed_case.sh nodes)
attend_bad_input_script(Distributed WorkersWithOtherOptions distributed_case.sh mismatch)
attend_bad_input_script(Distributed UnreachableMaster distributed_case.sh unreachable)
attend_bad_input_script(Distributed MismatchedWorldSizes distributed_case.sh worldsize)
attend_bad_input(Launch NoWorkers 2 "--nproc must be between 1 and 256, got 0" launch --nproc 0 -- info)
attend_bad_input(Launch NoCommand 2 "launch: no command to run .put it after --." launch --nproc 2)
attend_bad_input(Launch SeveralMachinesWithoutMaster 2 "--master HOST:PORT is needed with --nnodes > 1"
  launch --nproc 1 --nnodes 2 -- info)
attend_bad_input(Launch MasterWithoutPort 2 "--master must be HOST:PORT, got 'node0'" launch --nproc 1 --master node0 -- info)
attend_bad_input(Launch NodeRankOutOfRange 2 "--node-rank must be between 0 and 1, got 2"
  launch --nproc 1 --nnodes 2 --node-rank 2 --master node0:1 -- info)
attend_bad_input(Launch Recursive 2 "launch: the workers cannot run launch" launch --nproc 1 -- launch --nproc 1 -- info)
add_test(NAME BadInput.Distributed.BadRankVariable
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/expect.sh 1 "^attend: error: RANK must be a whole number in 0..65535, got 'x'$"
          env RANK=x WORLD_SIZE=2 ${bad_input_attend} ${train_ram} --run-dir ${bad_inputs}/out/Distributed.BadRank)
set_tests_properties(BadInput.Distributed.BadRankVariable PROPERTIES LABELS bad_input FIXTURES_REQUIRED bad_inputs
  TIMEOUT 120 ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
attend_bad_input(Distributed BadStore 2 "--dist-store must be tcp or file:PATH, got 'udp'"
  ${train_ram} --dist-store udp --run-dir ${OUT})
attend_bad_input(Distributed BadWait 2 "--dist-wait must be auto, spin or block, got 'poll'"
  ${train_ram} --dist-wait poll --run-dir ${OUT})
